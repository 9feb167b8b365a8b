"""The life of answers: where they begin (turns), one answer from the first byte to its final
state (generation), what pages are told (broadcast, over the frame protocol in frames),
moderation beside each answer, titles, and the supervisor of each process.
"""
