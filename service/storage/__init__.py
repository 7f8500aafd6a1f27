"""The MongoDB customer repository (motor / mongomock-motor)."""
