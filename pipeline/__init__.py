"""The Beam job of `armdata build`: sources, the graph and resume, sinks, errors."""
