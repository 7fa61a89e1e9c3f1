"""tuitrain: terminal training monitor and tuner."""
