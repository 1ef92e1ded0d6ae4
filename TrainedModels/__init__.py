"""The models shipped with hmmrnn, in the study's TrainedModels layout.

Installed as the package `hmmrnn_models`, so that `hmmrnn ls` and `hmmrnn-tui` find them from any
folder (`hmmrnn models path` prints where they are). Nothing here is meant to be imported.
"""
