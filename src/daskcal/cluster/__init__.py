"""daskcal.cluster (see DESIGN.md); filled by later issues."""
