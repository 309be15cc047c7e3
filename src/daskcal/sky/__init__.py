"""daskcal.sky (see DESIGN.md); filled by later issues."""
