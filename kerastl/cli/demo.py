"""``kerastl demo``: the main job on its embedded default data."""

from __future__ import annotations

import sys


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="fine-tune EfficientNet-Lite0 on few-shot Fashion-MNIST (offline)",
        description="Fine-tune EfficientNet-Lite0 (real ImageNet weights) on Fashion-MNIST "
                    "with 100 training images per class, then report the accuracy on 2,000 "
                    "official test images. Writes model, report and plots.")
    parser.add_argument("--output", default=None,
                        help="output folder (default: runs/demo, or the next free runs/demo-N)")
    parser.add_argument("--quick", action="store_true",
                        help="a seconds-long smoke run on tiny data (for tests)")
    parser.add_argument("--text", action="store_true",
                        help="the text demo instead: MiniLM (real pretrained weights) "
                             "fine-tuned on BBC News with 20 articles per class, tested on "
                             "500 held-out articles (offline)")
    parser.set_defaults(func=run)


def run(args) -> int:
    if args.text:
        from kerastl.text.demo import TextDemoConfig, run_text_demo

        config = TextDemoConfig.quick() if args.quick else TextDemoConfig()
        report = run_text_demo(args.output, config=config)
        what = "held-out BBC News articles"
        unit = "articles"
    else:
        from kerastl.demo import DemoConfig, run_demo

        config = DemoConfig.quick() if args.quick else DemoConfig()
        report = run_demo(args.output, config=config)
        what = "Fashion-MNIST test images"
        unit = "images"
    test = report["test_metrics"]
    files = report["files"]
    print(f"\nTest accuracy on {test['examples']} {what}: "
          f"{test['accuracy']:.4f}  ({config.train_per_class} training {unit} per class, "
          f"{report['timings']['total']:.0f} s)")
    for key, path in files.items():  # model, labels, report and every plot
        print(f"  {key:<17}{path}")
    sys.stdout.flush()
    return 0
