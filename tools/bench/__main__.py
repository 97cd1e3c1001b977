"""`make bench`: run every benchmark in tools/bench/ and print its Markdown block."""

from __future__ import annotations

from tools.bench import ingest, matching, ocr, plan, posting, rules, sync, trial_balance


def main() -> None:
    posting.main([])
    ingest.main([])
    matching.main([])
    trial_balance.main([])
    ocr.main([])
    plan.main([])
    sync.main([])
    rules.main([])


if __name__ == "__main__":
    main()
