"""Taking data away and bringing it in: a user's conversations exported (JSON, Markdown,
the zip of everything) and files imported (chatsite's own export, JSON or zip, and
ChatGPT's conversations.json).

Modules, each importing only those listed after it (every arrow points down):

    writing.py          import services: a checked file written in short transactions,
                        hidden until complete; jobs, their progress, clean-up. Imports
                        parsing, reading, ..services (batched deletion, the write pacer)
                        and ..models
    parsing.py          an upload to checked drafts: its copy, zip or JSON, which format;
                        import_check, import_drafts. Imports both formats and reading
    chatsite_format.py  chatsite's export to drafts. Imports reading and exports (FORMAT,
                        VERSION)
    chatgpt_format.py   ChatGPT's conversations.json to drafts. Imports reading
    reading.py          ImportRefused, limits, drafts, the capped JSON event stream, field
                        checks. Imports ..models only
    exports.py          export documents, file names, ZipStream. Imports ..models only

Everything but writing.py is pure: no database reads or writes (callers read through
selectors). Names starting with an underscore are shared between these modules only
(tests reach into writing.py's row writers).
"""
