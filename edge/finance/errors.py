"""Finance refusals: each a stable code, a Chinese and an English message, and the fields a user needs."""

from __future__ import annotations

from edge.ledger.errors import DomainError


class FinanceError(DomainError):
    """Base of every refusal by the finance layer."""

    code = "finance_error"


class ChartError(FinanceError):
    code = "invalid_chart"
    status = 422


class RuleTableError(FinanceError):
    code = "invalid_voucher_rules"
    status = 422


class ApprovalError(FinanceError):
    """An approval that is not allowed: one's own request, already approved, nothing to approve."""

    code = "approval_refused"
    status = 409


# --- supplier compliance (资质档案): edge/finance/uscc.py, papers.py, compliance.py ---


class InvalidCreditCode(FinanceError):
    """A unified social credit code that breaks GB 32100-2015 (length, alphabet, authority, check character)."""

    code = "invalid_credit_code"
    status = 422


class InvalidPaper(FinanceError):
    """An upload that is empty, unreadable or not what it claims to be."""

    code = "invalid_paper"
    status = 422


class PaperTooLarge(FinanceError):
    code = "paper_too_large"
    status = 413


class UnsupportedPaperType(FinanceError):
    code = "unsupported_paper_type"
    status = 415


class InvalidComplianceInput(FinanceError):
    """A field of a compliance request that is missing or malformed (a date, a reason, a kind)."""

    code = "invalid_compliance_input"
    status = 422


class UnknownSupplier(FinanceError):
    code = "unknown_supplier"
    status = 404

    def __init__(self, supplier_id: str) -> None:
        super().__init__(f"供应商不存在: {supplier_id}", f"no such supplier: {supplier_id}", supplier=supplier_id)


class UnknownComplianceRecord(FinanceError):
    """No such paper, freeze, review ticket, bank account change or purchase order."""

    code = "unknown_compliance_record"
    status = 404

    def __init__(self, kind: str, kind_zh: str, record_id: int | str) -> None:
        super().__init__(f"{kind_zh}不存在: {record_id}", f"no such {kind}: {record_id}", kind=kind, id=record_id)


class ComplianceStateError(FinanceError):
    """The record is not in a state that allows this (a paper already confirmed, a freeze already lifted)."""

    code = "compliance_state"
    status = 409


class CreditCodeMismatch(FinanceError):
    code = "credit_code_mismatch"
    status = 409


class SupplierFrozen(FinanceError):
    """Payments (and purchase orders) to a supplier with an open freeze are refused."""

    code = "supplier_frozen"
    status = 409


class PapersIncomplete(FinanceError):
    """The supplier's qualification papers are missing or expired; `detail` lists exactly which."""

    code = "papers_incomplete"
    status = 409


# --- purchase invoices and three-way match (进项发票, 三单匹配): edge/finance/invoices.py, ap.py, prices.py ---


class InvalidInvoice(FinanceError):
    """An invoice or an import file that cannot be read; `detail` names the row, line and field."""

    code = "invalid_invoice"
    status = 422


class ImportTooLarge(FinanceError):
    code = "import_too_large"
    status = 413

    def __init__(self, size: int, limit: int, what: str = "file") -> None:
        super().__init__(
            f"导入文件过大: {size} 字节，最多 {limit} 字节",
            f"import {what} too large: {size} bytes, at most {limit}",
            size=size,
            limit=limit,
        )


class BuyerMismatch(FinanceError):
    """The invoice's buyer is not this company (settings.company_credit_code)."""

    code = "buyer_mismatch"
    status = 422

    def __init__(self, invoice_no: str, buyer: str, company: str) -> None:
        super().__init__(
            f"发票 {invoice_no} 的购买方纳税人识别号 {buyer} 不是本公司 ({company})",
            f"invoice {invoice_no} names buyer {buyer}, not this company ({company})",
            invoice_no=invoice_no,
            field="buyer_credit_code",
            buyer_credit_code=buyer,
            company_credit_code=company,
        )


class DuplicateInvoice(FinanceError):
    code = "duplicate_invoice"
    status = 409

    def __init__(self, invoice_no: str, invoice_id: int | None = None, row: int | None = None) -> None:
        where_zh = f"第 {row} 行: " if row is not None else ""
        where_en = f"row {row}: " if row is not None else ""
        super().__init__(
            f"{where_zh}发票号码 {invoice_no} 已录入，不能重复录入",
            f"{where_en}invoice {invoice_no} was already entered; a duplicate is refused",
            invoice_no=invoice_no,
            invoice_id=invoice_id,
            **({"row": row} if row is not None else {}),
        )


class UnknownInvoice(FinanceError):
    code = "unknown_invoice"
    status = 404

    def __init__(self, what: int | str) -> None:
        super().__init__(f"发票不存在: {what}", f"no such invoice: {what}", invoice=what)


class UnknownInvoiceException(FinanceError):
    code = "unknown_invoice_exception"
    status = 404

    def __init__(self, exception_id: int) -> None:
        super().__init__(
            f"匹配异常不存在: {exception_id}", f"no such match exception: {exception_id}", exception=exception_id
        )


class InvoiceStateError(FinanceError):
    """The invoice is not in a state that allows this (already posted, not waiting for approval, ...)."""

    code = "invoice_state"
    status = 409


class InvalidPriceAgreement(FinanceError):
    code = "invalid_price_agreement"
    status = 422


class UnknownContract(FinanceError):
    code = "unknown_contract"
    status = 404

    def __init__(self, contract_no: str) -> None:
        super().__init__(f"合同不存在: {contract_no}", f"no such contract: {contract_no}", contract_no=contract_no)


class ContractSupplierMismatch(FinanceError):
    code = "contract_supplier_mismatch"
    status = 409

    def __init__(self, contract_no: str, holder: str, supplier_id: str) -> None:
        super().__init__(
            f"合同 {contract_no} 属于供应商 {holder}，不是 {supplier_id}",
            f"contract {contract_no} belongs to supplier {holder}, not {supplier_id}",
            contract_no=contract_no,
            contract_supplier=holder,
            supplier=supplier_id,
        )


class BooksError(FinanceError):
    """A books report or export that cannot be given as asked (bad period, unknown account, bad layout)."""

    code = "invalid_books_query"
    status = 422


class InvalidPeriod(BooksError):
    code = "invalid_period"


class UnknownAccount(BooksError):
    code = "unknown_account"


class InvalidDate(BooksError):
    code = "invalid_date"


class ExportRefused(BooksError):
    code = "export_refused"
