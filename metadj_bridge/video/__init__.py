"""Video out (and in, for avatar mode): Scope's frames shown at a fixed rate to the virtual webcam, a recording
and a local preview; a webcam or a video file as the outgoing track."""
