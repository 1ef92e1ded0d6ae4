"""hmmrnn: train small RNNs to emulate Hidden Markov Models, and take them apart.

Importing the package stays light (no torch); import the submodules you need.
"""

__version__ = "0.1.0"
