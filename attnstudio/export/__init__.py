"""Figures and reports: rendering views to PNG/SVG/PDF, whole-session exports, raw weights."""
