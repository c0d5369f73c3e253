"""musicgan: distributed training of music GANs on WebDataset shards."""

__version__ = "0.1.0"
