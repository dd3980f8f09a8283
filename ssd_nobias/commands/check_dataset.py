"""Check a whole dataset before a long run: every image decoded, sizes, boxes, classes, ids.

    python scripts/check_dataset.py --config configs/ssd300_mobilenet1.0_voc_nobias.yaml \
        data.root=/data/voc [--threads 8] [--list 20]

Exit status: 0 clean, 1 problems found (listed with their files), 2 the data cannot be used.
"""
import sys

from ssd_nobias import cli


def main(argv=None) -> int:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=0, help="decoding threads (default: cores)")
    p.add_argument("--list", type=int, default=20, metavar="N",
                   help="problems listed per kind (default 20)")
    args = p.parse_args(argv)
    from ssd_nobias.data.check import check_dataset, format_findings, format_summary  # MXNet

    cfg = cli.config_from(args)
    report = check_dataset(cfg, workers=args.threads)
    if report.unusable:
        print(f"unusable: {report.unusable}", file=sys.stderr)
        return report.status
    print(format_summary(report))
    if report.findings:
        print(f"\n{len(report.findings)} problems:")
        print(format_findings(report.findings, args.list))
    else:
        print("\nno problems found")
    return report.status

