"""Record and metric keys exchanged between the ServerApp and ClientApps: one place."""

# RecordDict entries
ARRAYS = "arrays"  # ArrayRecord: model weights
CONFIG = "config"  # ConfigRecord: per-round settings from the server
METRICS = "metrics"  # MetricRecord: numbers a site reports
SITE = "site"  # ConfigRecord: who replied, and why a round was declined
LEDGER = "ledger"  # ConfigRecord: the signed privacy-ledger entry of this reply
RECEIVED = "received"  # ArrayRecord: the other sites' synthetic pairs (share=exchange)
RECEIVED_FROM = "received-from"  # ConfigRecord: whose pairs, how many of each

# Message actions (message_type "train.<action>")
SYNTHESIZE = "synthesize"  # a site trains its generator (once) and releases gated pairs

# ArrayRecord keys of a synthetic release
SYNTH_IMAGES = "images"  # (k, C, S, S) float16 in [0, 1]
SYNTH_MASKS = "masks"  # (k, S, S) uint8

# ConfigRecord keys
SERVER_ROUND = "server-round"  # set by Flower's strategies
PROXIMAL_MU = "proximal-mu"  # set by FedProx
CHANNELS = "channels"  # the run's image channels, resolved by the server (rgb|grey|green)
SITE_NAME = "name"
DECLINED = "declined"  # reason text; present only when a site declines
LEDGER_ENTRY = "entry"  # the entry as canonical JSON text
RECEIVED_SITES = "sites"  # in RECEIVED_FROM: the releasing sites, in the pairs' order
RECEIVED_COUNTS = "counts"  # in RECEIVED_FROM: each site's number of pairs

# MetricRecord keys
NUM_EXAMPLES = "num-examples"  # the weighting key of FedAvg and friends
TRAIN_LOSS = "train-loss"
VAL_DICE = "val-dice"
VAL_EXAMPLES = "val-examples"
TRAIN_SECONDS = "train-seconds"  # time in the training loop only
HANDLER_SECONDS = "handler-seconds"  # whole train handler: data loading, training, packing
STARTUP_SECONDS = "startup-seconds"  # ClientApp process start to handler entry
SAMPLE_SECONDS = "sample-seconds"  # generating and gating synthetic pairs
SYNTH_GENERATED = "synthetic-generated"
SYNTH_DROPPED = "synthetic-dropped"  # near-copies stopped by the memorisation gate
SYNTH_IMPLAUSIBLE = "synthetic-implausible"  # masks outside the site's real range (mask check)
SYNTH_RELEASED = "synthetic-released"
SYNTH_QUALITY = "synthetic-"  # prefix: the release against the site's validation split
# (two-sample-accuracy, frechet-distance, foreground-real, foreground-synthetic)
UNIFORM_WEIGHT = "uniform-weight"  # set by the server under central DP: an unweighted average
