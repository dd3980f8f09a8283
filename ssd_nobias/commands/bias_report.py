"""Print which convolutions of a model have no bias once BatchNorm is folded into them.

    python scripts/bias_report.py [--config C.yaml] [model.name=ssd_300_mobilenet1.0_voc]
        [model.norm=batchnorm] [model.bias_free=[pw*,extra*]] [model.heads_bias=false]

The model is the config's (default: the stock defaults), built with fresh weights and one
batch of training statistics; no dataset is read (a *_custom model gets placeholder classes:
the report does not depend on them).
"""
from ssd_nobias import cli
from ssd_nobias.config import base_size


def main(argv=None) -> int:
    p = cli.parser(__doc__.splitlines()[0], config_required=False)
    args = p.parse_args(argv)
    import mxnet as mx  # after --help, which answers at once
    from ssd_nobias.model.ssd import bias_report, build_model, format_bias_report, standard_classes

    cfg = cli.config_from(args)
    kind = cfg.model.name.rsplit("_", 1)[1]
    classes = standard_classes(kind) if kind != "custom" else \
        [f"class{i}" for i in range(max(1, len(cfg.data.classes)))]
    net = build_model(cfg, classes)
    net.initialize()
    size = base_size(cfg)
    with mx.autograd.train_mode():  # one batch of statistics, as training would gather
        net(mx.nd.random.uniform(shape=(2, 3, size, size)))
    print(format_bias_report(bias_report(net)))
    return 0
