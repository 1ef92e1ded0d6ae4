"""hmmrnn-tui: the Textual workbench over hmmrnn (entry point: hmmrnn_tui.app:main)."""
