"""daskcal.qa (see DESIGN.md); filled by later issues."""
