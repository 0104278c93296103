"""The seam to Faust: building the app and binding topologies to agents."""
