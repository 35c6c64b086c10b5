"""Storage backends: each moves session records in and out of one kind of storage."""
