"""The ground floor every room stands on: errors, async and process helpers, logging, label matchers.

It imports nothing of ours (an import-linter contract holds it to that), so any room, the
composition in netqos/ and the tools in bench/ may use it without pulling in anything else.
"""
