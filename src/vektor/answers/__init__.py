"""Answers: the one path every transport takes to answer a user.

An `AnswerRequest` goes through prepare → admit → route → generate → store → publish
(`service.open_answer`, `generate.generate`, `service.finish_answer`). `/chat/stream` runs
it as a job that outlives its connection (`jobs`, `event_log`); `/v1/chat/completions` runs
it inside its response. See docs/ARCHITECTURE.md.
"""
