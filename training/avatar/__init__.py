"""Training the Gaussian avatar renderer on synthetic pairs (``pear-train renderer``)."""
