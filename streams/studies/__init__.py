"""Study-level logic (pure): series/study completeness, study results, clinical decision support."""
