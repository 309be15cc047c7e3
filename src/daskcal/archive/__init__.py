"""daskcal.archive (see DESIGN.md); filled by later issues."""
