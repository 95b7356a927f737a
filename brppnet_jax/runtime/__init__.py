"""Where and how the code runs: paths (local or gs://), devices, the mesh and its shardings,
the compilation cache, config files, and what every command line shares. Imports nothing else
of the package."""
