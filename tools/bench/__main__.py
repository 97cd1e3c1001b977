"""`make bench`: run every benchmark in tools/bench/ and print its Markdown block."""

from __future__ import annotations

from tools.bench import ingest, posting


def main() -> None:
    posting.main([])
    ingest.main([])


if __name__ == "__main__":
    main()
