"""Order Health: streaming order-fulfilment health analytics."""

__version__ = "0.1.0"
