"""Reference (hand-designed) networks the tasks ship, so the harness is proven before any NAS method."""
