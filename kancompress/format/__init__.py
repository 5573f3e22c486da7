"""Everything about kancompress files, one module per job:

- `schema`: the format version, the declared tensors of each checkpoint kind, the index-table entry type;
- `header`: reading and validating a checkpoint's header (no tensor data, no torch);
- `bits`: bit packing of codebook indices;
- `files`: the output policy and atomic writes;
- `checkpoint`: loading and saving whole checkpoints (torch);
- `state`: the resumable training-state file.

This package's `__init__` imports nothing, so reading a header (`kancompress inspect`) never imports torch.
"""
