"""A candidate successor to the BeatClock (issue 15), measured by ``bench.py audio --real``; not used by the daemon.

A log-filtered spectral-flux onset activation (``onset``) feeds a causal beat-pointer HMM with forward
filtering only (``dbn``); ``tracker.CausalBeatTracker`` runs both per 512-sample hop, emits a beat when the
most probable state's phase wraps, coasts through breakdowns on the last beat period, and guesses downbeats
from the low band and the chroma change at each beat. numpy only. See README.md for the figures and what it
would take to make it the daemon's tracker.
"""
