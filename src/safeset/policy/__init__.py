"""Policy: what each finding asks for (remove, exclude, review) and what a cleaned release drops."""
