"""Optical flow (Farneback, DIS, TV-L1), optical strain, flow images, region patches, the flow cache."""
