"""daskcal.pipeline (see DESIGN.md); filled by later issues."""
