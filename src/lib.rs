//! mlscore
