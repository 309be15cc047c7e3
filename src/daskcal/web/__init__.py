"""daskcal.web (see DESIGN.md); filled by later issues."""
