"""Privacy of health data: consent per connection, disconnecting (and purging), and the
access log of health data reads."""
