"""The app's views; each takes the session model and the result model it shows."""
