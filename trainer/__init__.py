"""The bundled trainer: streams armdata Parquet shards into a vision-language model fine-tune that
answers depth → trace → action (MolmoAct's format, SPEC §8). `armdata.trainer.train` is the loop."""
