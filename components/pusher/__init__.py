"""Pusher room: TFX's Pusher with an atomic filesystem push."""
CODE = ('pusher',)
