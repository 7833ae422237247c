"""goroutines package."""
