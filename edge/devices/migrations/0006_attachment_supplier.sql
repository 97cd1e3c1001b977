-- Devices: an attachment that names an ASN names its supplier too.
--
-- ASN ids are the supplier's own (asns is keyed by supplier and ASN id): two suppliers may both send DN-B-51.
-- A photo linked by the ASN id alone showed up on the other supplier's draft. From now on a terminal that names
-- an ASN names its supplier (from the delivery note), and the link is by both.

ALTER TABLE attachments ADD COLUMN supplier TEXT;  -- with ref_kind 'asn': the supplier of that ASN; else NULL
ALTER TABLE attachment_uploads ADD COLUMN supplier TEXT;

-- Files sent before named the ASN id only: give them the supplier where exactly one supplier has an ASN, a
-- delivery note or a receipt draft with that id; an id two suppliers used stays without (linked to neither).
UPDATE attachments SET supplier = (
    SELECT CASE WHEN COUNT(DISTINCT k.supplier) = 1 THEN MIN(k.supplier) END
    FROM (
        SELECT supplier, asn_id FROM asns
        UNION SELECT supplier, asn_id FROM delivery_notes
        UNION SELECT supplier, asn_id FROM receipt_drafts
    ) k
    WHERE k.asn_id = attachments.ref
) WHERE ref_kind = 'asn';

UPDATE attachment_uploads SET supplier = (
    SELECT CASE WHEN COUNT(DISTINCT k.supplier) = 1 THEN MIN(k.supplier) END
    FROM (
        SELECT supplier, asn_id FROM asns
        UNION SELECT supplier, asn_id FROM delivery_notes
        UNION SELECT supplier, asn_id FROM receipt_drafts
    ) k
    WHERE k.asn_id = attachment_uploads.ref
) WHERE ref_kind = 'asn';
