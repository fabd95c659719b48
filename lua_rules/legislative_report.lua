-- Art. 111: reports of legislative activity to constituents.
--
-- National Assembly members and local council members may report their legislative activity to
-- their constituents, but not from D-90 (by-/vacancy elections: from when the cause of the
-- election is confirmed, as the NEC applied it in 2025) to election day by rallies, briefing
-- sessions, report meetings, congratulatory speeches or greetings, printed or recorded reports or
-- phone calls. Posting on the member's own, the party's or an internet media company's homepage
-- stays allowed, and so do e-mail, text, SNS and messenger messages whose content does not lead
-- to election campaigning. Mailed reports are judged by the day they ARRIVE, not the day they are
-- sent. Nobody else reports legislative activity, so the article does not apply to them
-- (`coverage` below states it, Art. 111(1)).
--
-- In a by-election only some constituents vote. The NEC applies the restriction to the members
-- whose constituents vote in it (a member elsewhere reports as ever): `constituents_vote` says
-- whether this member's do, asked for only in a by-election and only when a restriction would
-- otherwise follow. A vacancy election of the President is held everywhere: every member's
-- constituents vote.
--
-- Mail arriving before the day it was sent never reaches these rules: the plugin's validate
-- refuses it with 422 on activity.arrival_date.

local D, fmt = epcs.D, epcs.fmt

local report_window = epcs.window {from = D(90), to = D(0), from_cause_confirmed = true}

local PENALTY = "Art. 256(3): imprisonment of up to 2 years or a fine of up to KRW 4 million"

local COVERED = {
    na_member = "National Assembly member",
    local_council_member = "local council member",
}

local COVERED_KO = {
    na_member = "국회의원",
    local_council_member = "지방의회의원",
}

-- Channels closed from D-90 to election day (mail by its arrival), named for the reasons; the
-- Korean names carry their instrumental particle (-로).
local BANNED = {
    rally = {"a rally", "집회로"},
    briefing_session = {"a briefing session", "설명회로"},
    report_meeting = {"a report meeting", "보고회로"},
    congratulatory_speech = {"a congratulatory speech", "축사로"},
    greeting = {"a greeting", "인사말로"},
    printed_report = {"a printed report", "인쇄물 의정보고서로"},
    recorded_report = {"a recorded report", "녹음물·녹화물 의정보고서로"},
    phone = {"phone calls", "전화로"},
    mail = {"mail", "우편으로"},
}

local HOMEPAGES = {
    own_homepage = {"the member's own homepage", "자신의 홈페이지"},
    party_homepage = {"the party's homepage", "정당의 홈페이지"},
    internet_media_homepage = {"an internet media company's homepage", "인터넷언론사의 홈페이지"},
}

-- Messages allowed whenever their content does not lead to election campaigning.
local ELECTRONIC = {
    email = {"e-mail", "전자우편으로"},
    text_message = {"a text message", "문자메시지로"},
    sns = {"an SNS message", "SNS로"},
    messenger = {"a messenger message", "메신저(카카오톡 등)로"},
}

local COVERAGE = epcs.coverage {
    {
        covers = {"na_member", "local_council_member"},
        left_out = {{
            kinds = {"voter", "party_member", "candidate", "prospective_candidate",
                     "local_government_head", "public_official", "journalist",
                     "gov_invested_org_executive", "local_public_corp_executive",
                     "reserve_force_commander", "residents_committee_member", "tong_ri_ban_head",
                     "publisher", "author", "business", "media_company", "platform", "other"},
            article = "111(1)",
            reason = "Art. 111(1) restricts only reports by National Assembly and local council members of their own legislative activity; it does not apply to anyone else (a member who is also a candidate asks as na_member or local_council_member).",
            reason_ko = "제111조제1항은 국회의원과 지방의회의원이 자신의 의정활동을 보고하는 경우에만 적용되므로 그 밖의 사람에게는 적용되지 않습니다 (후보자인 의원은 국회의원 또는 지방의회의원으로 문의하십시오).",
        }},
        probe = {election = "na22", date = "2024-02-01",
                 activity = {kind = "report", channel = "report_meeting"}},
    },
}

-- Only in a by-election do some constituents not vote (see above).
local function constituents_may_not_vote(election)
    return election.kind == "by_election"
end

-- Mail counts on the day it arrives; everything else on the day of the act.
local function decisive_date(q)
    local activity = q.activity
    if activity.channel == "mail" and activity.arrival_date then
        return activity.arrival_date
    end
    return q.date
end

local function evaluate(q, version)
    local actor, activity = q.actor, q.activity
    local left_out = COVERAGE:left_out(q)
    if left_out then
        return left_out
    end
    local missing = epcs.missing(q, "actor.kind", "activity.channel")
    if missing then
        return epcs.needs_facts {
            article = "111",
            missing = missing,
            reason = "Who reports and by which channel decide Art. 111.",
            reason_ko = "보고하는 사람과 보고 방법을 알아야 제111조를 적용할 수 있습니다.",
        }
    end
    local channel = activity.channel
    local from, to = report_window:span(q.election)
    local window = {from = from, to = to}
    local member, member_ko = COVERED[actor.kind], COVERED_KO[actor.kind]

    local homepage = HOMEPAGES[channel]
    if homepage then
        return epcs.allowed {
            article = "111",
            window = window,
            exception = "homepage_posting",
            reason = string.format(
                "A %s may always report legislative activity by posting on %s, even from %s to %s.",
                member, homepage[1], fmt(from), fmt(to)),
            reason_ko = string.format(
                "%s은 %s에 게시하는 방법으로는 %s부터 선거일(%s)까지도 의정활동을 보고할 수 있습니다.",
                member_ko, homepage[2], fmt(from), fmt(to)),
        }
    end

    local electronic = ELECTRONIC[channel]
    if electronic and activity.leads_to_campaign == false then
        return epcs.allowed {
            article = "111",
            window = window,
            exception = "electronic_message_no_campaigning",
            reason = string.format(
                "A report by %s whose content does not lead to election campaigning is allowed at any time.",
                electronic[1]),
            reason_ko = string.format(
                "선거운동에 이르지 아니하는 내용의 %s 하는 의정활동 보고는 언제나 할 수 있습니다.",
                electronic[2]),
        }
    end

    local day, what, what_ko = q.date, "this act on", "행위일"
    if channel == "mail" then
        local arrival = activity.arrival_date
        if arrival == nil then
            -- Mail sent after the window cannot arrive inside it: its arrival date changes nothing.
            if q.date <= to then
                return epcs.needs_facts {
                    article = "111",
                    window = window,
                    missing = {"activity.arrival_date"},
                    reason = "Art. 111 judges mailed reports by the day they arrive, not the day they are sent.",
                    reason_ko = "우편으로 보내는 의정보고서는 발송일이 아니라 선거구민에게 도착하는 날을 기준으로 판단합니다.",
                }
            end
            what, what_ko = "this mail sent on", "우편 발송일"
        else
            day, what, what_ko = arrival, "this mail arriving on", "우편 도착일"
        end
    end

    if day < from or day > to then
        return epcs.allowed {
            article = "111",
            window = window,
            reason = string.format(
                "Legislative activity reports are restricted only from %s to election day %s; %s %s lies outside.",
                fmt(from), fmt(to), what, fmt(day)),
            reason_ko = string.format(
                "의정활동 보고는 %s부터 선거일(%s)까지만 제한되며, %s %s은 그 기간 밖입니다.",
                fmt(from), fmt(to), what_ko, fmt(day)),
        }
    end

    local by_election = constituents_may_not_vote(q.election)
    if by_election and activity.constituents_vote == false then
        return epcs.allowed {
            article = "111(1)",
            window = window,
            exception = "constituents_not_voting",
            reason = string.format(
                "In the by-election of %s Art. 111(1) restricts the reports of members whose constituents vote in it; this member's do not.",
                fmt(to)),
            reason_ko = string.format(
                "보궐선거등(%s)에서 제111조제1항의 제한은 그 선거구의 선거구민을 대상으로 하는 의원에게 적용되며, 이 의원의 선거구민은 이 선거에서 투표하지 않습니다.",
                fmt(to)),
        }
    end
    local wanted = {}
    if by_election and activity.constituents_vote == nil then
        wanted[#wanted + 1] = "activity.constituents_vote"
    end
    if electronic and activity.leads_to_campaign == nil then
        wanted[#wanted + 1] = "activity.leads_to_campaign"
    end
    if #wanted > 0 then
        local how = electronic and string.format(
            "a report by %s is allowed only when its content does not lead to election campaigning",
            electronic[1]) or string.format("a report by %s is prohibited", BANNED[channel][1])
        local how_ko = electronic and string.format(
            "선거운동에 이르지 아니하는 내용의 %s만 의정활동을 보고할 수 있습니다", electronic[2])
            or string.format("%s 의정활동을 보고할 수 없습니다", BANNED[channel][2])
        return epcs.needs_facts {
            article = "111",
            window = window,
            missing = wanted,
            reason = string.format("From %s to %s %s%s.", fmt(from), fmt(to), how,
                by_election and ", for members whose constituents vote in this by-election" or ""),
            reason_ko = string.format("%s부터 선거일(%s)까지 %s%s.", fmt(from), fmt(to),
                by_election and "이 보궐선거등에서 투표하는 선거구민을 대상으로 하는 의원은 " or "",
                how_ko),
        }
    end

    local how = electronic and {electronic[1] .. " leading to election campaigning",
                                "선거운동에 이르는 내용의 " .. electronic[2]}
        or BANNED[channel]
    return epcs.prohibited {
        article = "111",
        window = window,
        penalty = PENALTY,
        reason = string.format(
            "A %s may not report legislative activity by %s from %s to election day %s%s.",
            member, how[1], fmt(from), fmt(to),
            channel == "mail" and string.format("; this mail arrives on %s", fmt(day)) or ""),
        reason_ko = string.format(
            "%s은 %s부터 선거일(%s)까지 %s 의정활동을 보고할 수 없습니다%s.",
            member_ko, fmt(from), fmt(to), how[2],
            channel == "mail" and string.format(" (우편 도착일 %s)", fmt(day)) or ""),
    }
end

return epcs.area {
    name = "legislative_report",
    article = "111",
    coverage = COVERAGE,
    title = "Legislative activity reports restricted (D-90 to election day)",
    title_ko = "의정활동 보고 제한 (선거일 전 90일부터 선거일까지)",
    decisive_date = decisive_date,
    versions = {
        {
            -- Every bundled election falls long after this restriction took its present
            -- form; 2004-03-12 (the 2004 revision of the Act) stands as the version's start.
            -- Check the Act's history before adding an election held before it.
            id = "legislative_report/111/2004-03-12",
            effective_from = "2004-03-12",
            promulgated = "2004-03-12",
            window = report_window,
            evaluate = evaluate,
            probe = {
                actor = {kind = "na_member"},
                -- constituents_vote decides only in a by-election; elsewhere it is not read.
                activity = {kind = "report", channel = "report_meeting", constituents_vote = true},
                inside = {verdict = "prohibited", article = "111"},
                outside = {verdict = "allowed", article = "111"},
            },
        },
    },
    tests = {
        {
            name = "p08: report meeting the day before D-90",
            election = "na22", date = "2024-01-10", actor = {kind = "na_member"},
            activity = {kind = "report", channel = "report_meeting"},
            expect = {verdict = "allowed", article = "111",
                      window = {from = "2024-01-11", to = "2024-04-10"}},
        },
        {
            name = "p09: report meeting on D-90",
            election = "na22", date = "2024-01-11", actor = {kind = "na_member"},
            activity = {kind = "report", channel = "report_meeting"},
            expect = {verdict = "prohibited", article = "111", penalty = PENALTY,
                      window = {from = "2024-01-11", to = "2024-04-10"}},
        },
        {
            name = "p10: the window ended on election day",
            election = "na22", date = "2024-04-11", actor = {kind = "na_member"},
            activity = {kind = "report", channel = "report_meeting"},
            expect = {verdict = "allowed", article = "111"},
        },
        {
            name = "p11: messenger message without campaigning",
            election = "na22", date = "2024-02-01", actor = {kind = "na_member"},
            activity = {kind = "report", channel = "messenger", leads_to_campaign = false},
            expect = {verdict = "allowed", article = "111",
                      exception = "electronic_message_no_campaigning"},
        },
        {
            name = "p12: posting on the party's homepage",
            election = "na22", date = "2024-03-15", actor = {kind = "na_member"},
            activity = {kind = "report", channel = "party_homepage"},
            expect = {verdict = "allowed", article = "111", exception = "homepage_posting"},
        },
        {
            name = "p13: mail sent before D-90 but arriving on D-90",
            election = "na22", date = "2024-01-08", actor = {kind = "na_member"},
            activity = {kind = "report", channel = "mail", arrival_date = "2024-01-11"},
            expect = {verdict = "prohibited", article = "111", penalty = PENALTY},
        },
        {
            name = "mail arriving the day before D-90 is allowed, though sent the same week",
            election = "na22", date = "2024-01-08", actor = {kind = "na_member"},
            activity = {kind = "report", channel = "mail", arrival_date = "2024-01-10"},
            expect = {verdict = "allowed", article = "111"},
        },
        {
            name = "mail inside the window needs its arrival date",
            election = "na22", date = "2024-01-05", actor = {kind = "na_member"},
            activity = {kind = "report", channel = "mail"},
            expect = {verdict = "needs_facts", article = "111",
                      missing = {"activity.arrival_date"}},
        },
        {
            name = "mail sent after election day cannot arrive inside the window",
            election = "na22", date = "2024-04-11", actor = {kind = "na_member"},
            activity = {kind = "report", channel = "mail"},
            expect = {verdict = "allowed", article = "111"},
        },
        {
            name = "mail sent inside the window but arriving after election day",
            election = "na22", date = "2024-04-09", actor = {kind = "local_council_member"},
            activity = {kind = "report", channel = "mail", arrival_date = "2024-04-11"},
            expect = {verdict = "allowed", article = "111",
                      window = {from = "2024-01-11", to = "2024-04-10"}},
        },
        {
            name = "l01: by-election, a rally of a member whose constituents vote in it (Art. 111(1))",
            election = "ganghwa2024", date = "2024-07-18", actor = {kind = "local_council_member"},
            activity = {kind = "report", channel = "rally", constituents_vote = true},
            expect = {verdict = "prohibited", article = "111", penalty = PENALTY,
                      window = {from = "2024-07-18", to = "2024-10-16"}},
        },
        {
            name = "l02: by-election, a member whose constituents do not vote in it reports as ever",
            election = "ganghwa2024", date = "2024-08-01", actor = {kind = "na_member"},
            activity = {kind = "report", channel = "report_meeting", constituents_vote = false},
            expect = {verdict = "allowed", article = "111(1)", exception = "constituents_not_voting",
                      window = {from = "2024-07-18", to = "2024-10-16"}},
        },
        {
            name = "l03: by-election, whether the member's constituents vote decides",
            election = "byel2021_seoul", date = "2021-03-01", actor = {kind = "local_council_member"},
            activity = {kind = "report", channel = "printed_report"},
            expect = {verdict = "needs_facts", article = "111",
                      missing = {"activity.constituents_vote"},
                      window = {from = "2021-01-07", to = "2021-04-07"}},
        },
        {
            name = "l04: by-election, an e-mail asks both open facts at once",
            election = "byel2021_busan", date = "2021-03-01", actor = {kind = "na_member"},
            activity = {kind = "report", channel = "email"},
            expect = {verdict = "needs_facts", article = "111",
                      missing = {"activity.constituents_vote", "activity.leads_to_campaign"}},
        },
        {
            name = "l05: a presidential vacancy election is held everywhere: no constituents asked",
            election = "pres21", date = "2025-05-01", actor = {kind = "na_member"},
            activity = {kind = "report", channel = "rally"},
            expect = {verdict = "prohibited", article = "111"},
        },
        {
            name = "l06: by-election, the fact is not asked outside the window",
            election = "ganghwa2024", date = "2024-07-17", actor = {kind = "na_member"},
            activity = {kind = "report", channel = "rally"},
            expect = {verdict = "allowed", article = "111"},
        },
        {
            name = "l07: a local government head does not report legislative activity (Art. 111(1))",
            election = "local9", date = "2026-04-01", actor = {kind = "local_government_head"},
            activity = {kind = "report", channel = "report_meeting"},
            expect = {verdict = "allowed", article = "111(1)", exception = "actor_not_covered"},
        },
        {
            name = "local council member, printed report on election day",
            election = "local9", date = "2026-06-03", actor = {kind = "local_council_member"},
            activity = {kind = "report", channel = "printed_report"},
            expect = {verdict = "prohibited", article = "111", penalty = PENALTY,
                      window = {from = "2026-03-05", to = "2026-06-03"}},
        },
        {
            name = "own homepage, inside the window",
            election = "na22", date = "2024-04-10", actor = {kind = "na_member"},
            activity = {kind = "report", channel = "own_homepage"},
            expect = {verdict = "allowed", article = "111", exception = "homepage_posting"},
        },
        {
            name = "internet media homepage, inside the window",
            election = "na22", date = "2024-02-01", actor = {kind = "local_council_member"},
            activity = {kind = "report", channel = "internet_media_homepage"},
            expect = {verdict = "allowed", article = "111", exception = "homepage_posting"},
        },
        {
            name = "text message leading to campaigning inside the window",
            election = "na22", date = "2024-02-01", actor = {kind = "na_member"},
            activity = {kind = "report", channel = "text_message", leads_to_campaign = true},
            expect = {verdict = "prohibited", article = "111", penalty = PENALTY},
        },
        {
            name = "e-mail inside the window needs to know whether it leads to campaigning",
            election = "na22", date = "2024-02-01", actor = {kind = "na_member"},
            activity = {kind = "report", channel = "email"},
            expect = {verdict = "needs_facts", article = "111",
                      missing = {"activity.leads_to_campaign"}},
        },
        {
            name = "SNS leading to campaigning outside the window is not restricted by Art. 111",
            election = "na22", date = "2023-12-01", actor = {kind = "na_member"},
            activity = {kind = "report", channel = "sns", leads_to_campaign = true},
            expect = {verdict = "allowed", article = "111"},
        },
        {
            name = "phone calls on election day",
            election = "na22", date = "2024-04-10", actor = {kind = "na_member"},
            activity = {kind = "report", channel = "phone"},
            expect = {verdict = "prohibited", article = "111"},
        },
        {
            name = "a voter is not covered by Art. 111",
            election = "na22", date = "2024-02-01", actor = {kind = "voter"},
            activity = {kind = "report", channel = "report_meeting"},
            expect = {verdict = "allowed", article = "111(1)", exception = "actor_not_covered",
                      window = {from = "2024-01-11", to = "2024-04-10"}},
        },
        {
            name = "a candidate who is not a member is not covered, whatever the channel",
            election = "na22", date = "2024-02-01", actor = {kind = "candidate"},
            activity = {kind = "report"},
            expect = {verdict = "allowed", article = "111(1)", exception = "actor_not_covered"},
        },
        {
            name = "without the actor Art. 111 cannot be applied",
            election = "na22", date = "2024-02-01",
            activity = {kind = "report", channel = "rally"},
            expect = {verdict = "needs_facts", article = "111", missing = {"actor.kind"}},
        },
        {
            name = "without actor and channel both are asked for at once",
            election = "na22", date = "2024-02-01", activity = {kind = "report"},
            expect = {verdict = "needs_facts", article = "111",
                      missing = {"actor.kind", "activity.channel"}},
        },
        {
            name = "without the channel Art. 111 cannot be applied",
            election = "na22", date = "2024-02-01", actor = {kind = "na_member"},
            activity = {kind = "report"},
            expect = {verdict = "needs_facts", article = "111", missing = {"activity.channel"}},
        },
        {
            name = "vacancy election: D-90 (2025-03-05) is before the cause was confirmed",
            election = "pres21", date = "2025-03-20", actor = {kind = "na_member"},
            activity = {kind = "report", channel = "briefing_session"},
            expect = {verdict = "allowed", article = "111",
                      window = {from = "2025-04-04", to = "2025-06-03"}},
        },
        {
            name = "vacancy election: the window opens on the day the cause was confirmed",
            election = "pres21", date = "2025-04-04", actor = {kind = "na_member"},
            activity = {kind = "report", channel = "congratulatory_speech"},
            expect = {verdict = "prohibited", article = "111",
                      window = {from = "2025-04-04", to = "2025-06-03"}},
        },
        {
            name = "vacancy election: mail arriving before the cause was confirmed is allowed",
            election = "pres21", date = "2025-04-01", actor = {kind = "local_council_member"},
            activity = {kind = "report", channel = "mail", arrival_date = "2025-04-03"},
            expect = {verdict = "allowed", article = "111"},
        },
        {
            name = "greeting on the first day of the na23 window",
            election = "na23", date = "2028-01-13", actor = {kind = "na_member"},
            activity = {kind = "report", channel = "greeting"},
            expect = {verdict = "prohibited", article = "111",
                      window = {from = "2028-01-13", to = "2028-04-12"}},
        },
        {
            name = "recorded report inside the window",
            election = "na22", date = "2024-03-01", actor = {kind = "na_member"},
            activity = {kind = "report", channel = "recorded_report"},
            expect = {verdict = "prohibited", article = "111"},
        },
    },
}
