"""Everything the bridge listens to, turned into signals, triggers and tempo readings.

Every input delivers through one small interface, ``signals.InputSink`` (``set`` a value, ``fire`` a trigger,
hand over a ``tempo`` reading), into one store: a running bridge's ``SignalBoard``.

- Audio: WAV files (``wav.py``), input devices (``audio_devices.py``), block sources for files and live input
  (``audio.py``, ``live_audio.py``), the feature maths (``analysis.py``, ``analysis_config.py``), the audio
  BeatClock (``tempo.py``: the onset activation in ``beat_activation.py``, the beat HMM in ``beat_hmm.py``, the
  bar in ``downbeats.py``, its first guess in ``music_entry.py``), song sections (``sections.py``,
  ``buildup.py``), and the worker thread that runs them and delivers the results (``analyzer.py``); ``synth.py``
  makes the demo track and test music, ``evaluation.py`` scores beat tracking.
- MIDI: ports and patterns (``midi_ports.py``), decoding (``midi_decode.py``), MIDI clock (``midi_clock.py``),
  and the input with hot-plug (``midi.py``).
- OSC: the bounded wire-format reader (``osc_wire.py``), decoding (``osc_decode.py``, with the Resolume and
  Ableton tables in ``osc_presets.py``), the UDP input
  (``osc.py``), and AbletonOSC's listen requests (``ableton_osc.py``).
- Tempo: Ableton Link (``tempo_link.py``) and the arbiter that makes one beat grid of every source
  (``tempo_sources.py``).

Imports the ground floor (errors, signals, lifecycle): never ``mapping/``, ``scope/`` or ``profile/``. Decoding,
analysis and the BeatClock are pure; the edges hand values from their threads to the event loop with
``call_soon_threadsafe``.
"""
