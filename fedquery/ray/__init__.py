"""The Ray engine: the same plan on a Ray cluster, through Daft.

``fedquery.connect(catalog, engine="ray", ray_address=None)`` plans as the local engine does
and executes the plan on a cluster (``cluster``): every fragment is a Daft read split into
tasks that run on the workers (``reads``, ``partitions``), blob functions over one fragment run
there as Daft UDFs (``hoist``), and the residual runs on the cluster (``residual``). Workers
open the catalog themselves (``worker``); only results travel back to the driver. Needs
``pip install 'fedquery[ray]'``.
"""
