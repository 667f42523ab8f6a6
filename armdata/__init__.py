"""armdata: training data for action reasoning models, built with Apache Beam."""
__version__ = "0.1.0"
