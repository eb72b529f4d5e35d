"""Qt only: the main window, its views and workers. Each widget takes the model it shows."""
