"""The app's screens: one module each (Chat, Train, Data, Models) plus help and dialogs."""
