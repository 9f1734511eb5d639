package com.example;

import com.google.common.base.Joiner;
import org.apache.commons.lang3.StringUtils;

/** The application: the part of the jar that changes on every commit. */
public class App {
    public static void main(String[] args) {
        String who = args.length > 0 ? Joiner.on(' ').join(args) : "world";
        System.out.println(Greeting.of(StringUtils.capitalize(who)));
    }
}
