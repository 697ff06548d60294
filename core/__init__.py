"""The rules and the parts. No request objects, no templates."""
