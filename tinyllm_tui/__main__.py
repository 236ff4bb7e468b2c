from tinyllm_tui.app import main

main()
