"""``lfft serve``: the deployed half of the loop (docs/serve.md).

:mod:`~lfft.serve.server` (HTTP), :mod:`~lfft.serve.api` (bodies and errors),
:mod:`~lfft.serve.backend` (transformers or upstream), :mod:`~lfft.serve.convo` (conversation
identity), :mod:`~lfft.serve.log` (the lfft-events log).
"""
