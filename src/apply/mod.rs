//! Carry out a plan: images, network, volumes, containers, host integration.
