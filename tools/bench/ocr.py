"""OCR benchmark: one licence image read by the box's OCR (rapidocr-onnxruntime), cold and warm.

Cold is a new engine: loading the three ONNX models and the first recognition. Warm is the same engine again
(what every upload after the first costs). The image is a 营业执照 rendered by tools/render_licence.py at
1400x990 px (a phone photo is scaled to at most 2000 px before OCR). Fields are read from the text and checked.
Run: `python -m tools.bench.ocr [--runs N] [--width PX] [--format png|jpeg|pdf]`.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from edge.finance.ocr import OcrEngine
from edge.finance.papers import read_fields, sniff_upload
from tools.render_licence import PaperFacts, render


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="warm runs")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--format", choices=("png", "jpeg", "pdf"), default="png")
    args = parser.parse_args(argv)
    facts = PaperFacts()
    data = render("business_licence", facts, fmt=args.format, width=args.width)
    file_type = sniff_upload(data, 100 * 1024 * 1024)

    began = time.perf_counter()
    engine = OcrEngine()
    engine.warm_up()
    load = time.perf_counter() - began
    first = engine.read(data, file_type)
    cold = time.perf_counter() - began
    warm = [engine.read(data, file_type).seconds for _ in range(args.runs)]
    fields = read_fields(list(first.lines)).fields
    correct = (fields.name, fields.credit_code, fields.address) == (facts.name, facts.credit_code, facts.address)
    result = {
        "image": f"{args.format} {args.width} px wide, {len(data)} bytes",
        "lines": len(first.lines),
        "model_load_s": round(load, 2),
        "cold_s": round(cold, 2),
        "warm_median_s": round(statistics.median(warm), 2),
        "warm_min_s": round(min(warm), 2),
        "warm_runs": args.runs,
        "fields_correct": correct,
    }
    print(
        f"| OCR of one 营业执照 ({result['image']}) | {result['lines']} lines | cold {result['cold_s']} s "
        f"(models {result['model_load_s']} s) | warm median {result['warm_median_s']} s, min {result['warm_min_s']} s "
        f"over {args.runs} | fields {'correct' if correct else 'WRONG'} |"
    )
    return result


if __name__ == "__main__":
    main()
