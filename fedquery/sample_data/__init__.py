"""The seeded sample drive data set: a warehouse, a Parquet lake, camera and LIDAR blobs, and
a vector index, with the `catalog.yaml` that joins them. Build it with `generate.build()`."""
