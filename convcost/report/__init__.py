"""Renderers: Rich tables, JSON, CSV, Markdown, JUnit, GitHub annotations (they return text, never print)."""
